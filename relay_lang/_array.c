/* Relay arrays: one object type, two element kinds (V8's "elements kinds").
 *
 *   NUMBERS  a flat buffer of doubles: compiled code reads and writes it in place
 *   VALUES   a buffer of object references: any Relay value
 *
 * Every array starts as NUMBERS and moves to VALUES, once and in place, the
 * first time it receives something that is not a float (the object keeps its
 * identity, so every alias sees the change). The interpreter and compiled code
 * share the same object: no copies cross the tiers.
 *
 * Compiled code reads the layout (_array.h), calls functions of its own and holds the arrays it
 * works on (pins): see _abi.c, the C side of the compiled-code ABI.
 *
 * Indexing takes Relay's keys (a float holding a whole number in range) and,
 * for Python code, ints (negative ones count from the end) and slices. Any
 * other key goes to the index-error hook that ops.py installs, which raises
 * the Relay error both tiers report.
 */
#include "_array.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static PyTypeObject ArrayIterType;
static PyObject *index_error_hook;  /* hook(array, key): raises the Relay error for a bad key */

/* ------------------------------------------------------------------ storage */

/* Item buffers start on a 64-byte boundary (a cache line; a whole AVX-512 vector), as NumPy's
 * do: vectorized compiled loops then read and write them without split lines. PyMem gives 16:
 * each buffer takes ALIGN extra bytes, and the byte before its start holds how many it skipped. */
#define ALIGN 64

static unsigned char *
aligned_start(unsigned char *raw)
{
    return raw + (ALIGN - (uintptr_t)raw % ALIGN);  /* 1..ALIGN bytes in: room for the gap byte */
}

static void *
items_alloc(size_t nbytes)
{
    unsigned char *raw = PyMem_Malloc(nbytes + ALIGN);
    if (raw == NULL)
        return NULL;
    unsigned char *start = aligned_start(raw);
    start[-1] = (unsigned char)(start - raw);
    return start;
}

/* Grows (or makes) a buffer whose first `used` bytes are kept. */
static void *
items_realloc(void *items, size_t used, size_t nbytes)
{
    if (items == NULL)
        return items_alloc(nbytes);
    unsigned char *old = items;
    size_t old_gap = old[-1];
    unsigned char *raw = PyMem_Realloc(old - old_gap, nbytes + ALIGN);
    if (raw == NULL)
        return NULL;
    unsigned char *start = aligned_start(raw);
    if ((size_t)(start - raw) != old_gap)  /* the block moved to another alignment: shift the items */
        memmove(start, raw + old_gap, used);
    start[-1] = (unsigned char)(start - raw);  /* after the move: it may overwrite the old first item */
    return start;
}

static void
items_free(void *items)
{
    if (items != NULL) {
        unsigned char *start = items;
        PyMem_Free(start - start[-1]);
    }
}

ArrayObject *
array_alloc(Py_ssize_t capacity)
{
    if (capacity > (PY_SSIZE_T_MAX - ALIGN) / 8) {
        PyErr_NoMemory();
        return NULL;
    }
    ArrayObject *a = PyObject_GC_New(ArrayObject, &ArrayType);
    if (a == NULL)
        return NULL;
    a->size = 0;
    a->kind = NUMBERS;
    a->capacity = capacity;
    a->items = NULL;
    a->pins = 0;
    a->pin_owner = NULL;
    a->owner_pins = 0;
    a->deferred = 0;
    if (capacity > 0) {
        a->items = items_alloc((size_t)capacity * 8);
        if (a->items == NULL) {
            a->capacity = 0;
            Py_DECREF(a);
            PyErr_NoMemory();
            return NULL;
        }
    }
    return a;  /* untracked: a NUMBERS array holds no references (see become_values) */
}

/* Marks an array VALUES: from now on it may hold references, so the cycle collector tracks it.
 * A NUMBERS array is never tracked: compiled code counts references of the arrays it makes
 * without the GIL, which gc.get_objects() in another thread must not be able to reach. */
static void
become_values(ArrayObject *a)
{
    a->kind = VALUES;
    if (!PyObject_GC_IsTracked((PyObject *)a))
        PyObject_GC_Track(a);
}

int
array_reserve(ArrayObject *a, Py_ssize_t needed)
{
    if (needed <= a->capacity)
        return 0;
    Py_ssize_t capacity = needed + (needed >> 3) + (needed < 9 ? 3 : 6);  /* list's growth pattern */
    if (needed > PY_SSIZE_T_MAX / 16) {
        PyErr_NoMemory();
        return -1;
    }
    void *items = items_realloc(a->items, (size_t)a->size * 8, (size_t)capacity * 8);
    if (items == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    a->items = items;
    a->capacity = capacity;
    return 0;
}

/* NUMBERS -> VALUES, in place; on failure the array is unchanged. */
static int
to_values(ArrayObject *a)
{
    PyObject **objs = items_alloc((size_t)(a->capacity > 0 ? a->capacity : 1) * 8);
    if (objs == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < a->size; i++) {
        objs[i] = PyFloat_FromDouble(NUMS(a)[i]);
        if (objs[i] == NULL) {
            while (--i >= 0)
                Py_DECREF(objs[i]);
            items_free(objs);
            return -1;
        }
    }
    items_free(a->items);
    a->items = objs;
    become_values(a);
    if (a->capacity == 0)
        a->capacity = 1;
    return 0;
}

static PyObject *
item(ArrayObject *a, Py_ssize_t i)
{
    if (a->kind == NUMBERS)
        return PyFloat_FromDouble(NUMS(a)[i]);
    return Py_NewRef(OBJS(a)[i]);
}

static int
store(ArrayObject *a, Py_ssize_t i, PyObject *v)
{
    if (a->kind == NUMBERS) {
        if (PyFloat_CheckExact(v)) {
            NUMS(a)[i] = PyFloat_AS_DOUBLE(v);
            return 0;
        }
        if (array_check_unpinned(a) < 0 || to_values(a) < 0)
            return -1;
    }
    Py_SETREF(OBJS(a)[i], Py_NewRef(v));
    return 0;
}

static int
append(ArrayObject *a, PyObject *v)
{
    if (array_check_unpinned(a) < 0 || array_reserve(a, a->size + 1) < 0)
        return -1;
    if (a->kind == NUMBERS) {
        if (PyFloat_CheckExact(v)) {
            NUMS(a)[a->size++] = PyFloat_AS_DOUBLE(v);
            return 0;
        }
        if (to_values(a) < 0)
            return -1;
    }
    OBJS(a)[a->size++] = Py_NewRef(v);
    return 0;
}

static ArrayObject *
from_items(PyObject *const *items, Py_ssize_t n)
{
    ArrayObject *a = array_alloc(n);
    if (a == NULL)
        return NULL;
    Py_ssize_t i = 0;
    while (i < n && PyFloat_CheckExact(items[i]))
        i++;
    if (i == n) {
        for (i = 0; i < n; i++)
            NUMS(a)[i] = PyFloat_AS_DOUBLE(items[i]);
    } else {
        become_values(a);
        for (i = 0; i < n; i++)
            OBJS(a)[i] = Py_NewRef(items[i]);
    }
    a->size = n;
    return a;
}

ArrayObject *
array_from_iterable(PyObject *iterable)
{
    if (IS_ARRAY(iterable)) {
        ArrayObject *src = (ArrayObject *)iterable;
        /* Read once: compiled code of another thread may push in place meanwhile (no GIL). */
        Py_ssize_t n = src->size;
        ArrayObject *a = array_alloc(n);
        if (a == NULL)
            return NULL;
        if (n > 0)
            memcpy(a->items, src->items, (size_t)n * 8);
        a->size = n;
        if (src->kind == VALUES) {
            become_values(a);
            for (Py_ssize_t i = 0; i < n; i++)
                Py_INCREF(OBJS(a)[i]);
        }
        return a;
    }
    PyObject *seq = PySequence_Fast(iterable, "Array() takes an iterable");
    if (seq == NULL)
        return NULL;
    ArrayObject *a = from_items(PySequence_Fast_ITEMS(seq), PySequence_Fast_GET_SIZE(seq));
    Py_DECREF(seq);
    return a;
}

/* ------------------------------------------------------------------ keys */

/* The position a key names: 0 <= i < size, or -1 with an exception set. */
static Py_ssize_t
position(ArrayObject *a, PyObject *key)
{
    if (PyFloat_CheckExact(key)) {
        double k = PyFloat_AS_DOUBLE(key);
        if (k >= 0.0 && k < (double)a->size && k == (double)(Py_ssize_t)k)
            return (Py_ssize_t)k;
    } else if (PyLong_CheckExact(key)) {  /* Python's own use; never a Relay value (bools are not exact ints) */
        Py_ssize_t i = PyLong_AsSsize_t(key);
        if (i == -1 && PyErr_Occurred())
            return -1;
        if (i < 0)
            i += a->size;
        if (i >= 0 && i < a->size)
            return i;
        PyErr_SetString(PyExc_IndexError, "Array index out of range");
        return -1;
    }
    if (index_error_hook == NULL) {
        PyErr_SetString(PyExc_IndexError, "bad Array index");
        return -1;
    }
    PyObject *r = PyObject_CallFunctionObjArgs(index_error_hook, (PyObject *)a, key, NULL);
    if (r != NULL) {  /* the hook must raise */
        Py_DECREF(r);
        PyErr_SetString(PyExc_SystemError, "the Array index-error hook returned");
    }
    return -1;
}

static ArrayObject *
array_slice(ArrayObject *a, PyObject *key)
{
    Py_ssize_t start, stop, step;
    if (PySlice_Unpack(key, &start, &stop, &step) < 0)
        return NULL;
    Py_ssize_t n = PySlice_AdjustIndices(a->size, &start, &stop, step);
    ArrayObject *r = array_alloc(n);
    if (r == NULL)
        return NULL;
    if (a->kind == VALUES)
        become_values(r);
    for (Py_ssize_t i = 0, k = start; i < n; i++, k += step) {
        if (a->kind == NUMBERS)
            NUMS(r)[i] = NUMS(a)[k];
        else
            OBJS(r)[i] = Py_NewRef(OBJS(a)[k]);
    }
    r->size = n;
    return r;
}

static PyObject *
array_subscript(ArrayObject *a, PyObject *key)
{
    if (PyFloat_CheckExact(key) && a->kind == NUMBERS) {  /* the hot path */
        double k = PyFloat_AS_DOUBLE(key);
        if (k >= 0.0 && k < (double)a->size && k == (double)(Py_ssize_t)k)
            return PyFloat_FromDouble(NUMS(a)[(Py_ssize_t)k]);
    }
    if (PySlice_Check(key))
        return (PyObject *)array_slice(a, key);
    Py_ssize_t i = position(a, key);
    return i < 0 ? NULL : item(a, i);
}

static int
array_ass_subscript(ArrayObject *a, PyObject *key, PyObject *value)
{
    if (value == NULL) {
        PyErr_SetString(PyExc_TypeError, "Relay arrays do not delete elements");
        return -1;
    }
    Py_ssize_t i = position(a, key);
    return i < 0 ? -1 : store(a, i, value);
}

static Py_ssize_t
array_length(ArrayObject *a)
{
    return a->size;
}

static PyObject *
array_item(ArrayObject *a, Py_ssize_t i)
{
    if (i < 0 || i >= a->size) {
        PyErr_SetString(PyExc_IndexError, "Array index out of range");
        return NULL;
    }
    return item(a, i);
}

/* ------------------------------------------------------------------ lifetime */

static int
array_traverse(ArrayObject *a, visitproc visit, void *arg)
{
    if (a->kind == VALUES)
        for (Py_ssize_t i = 0; i < a->size; i++)
            Py_VISIT(OBJS(a)[i]);
    return 0;
}

static int
array_clear(ArrayObject *a)
{
    if (a->kind == VALUES) {
        Py_ssize_t n = a->size;
        PyObject **objs = OBJS(a);
        a->size = 0;  /* nothing can reach the references while they go */
        for (Py_ssize_t i = 0; i < n; i++)
            Py_XDECREF(objs[i]);
    }
    a->size = 0;
    return 0;
}

static void
array_dealloc(ArrayObject *a)
{
    PyObject_GC_UnTrack(a);
    Py_TRASHCAN_BEGIN(a, array_dealloc)  /* arrays nested a million deep free without deep C recursion */
    array_clear(a);
    items_free(a->items);
    Py_TYPE(a)->tp_free((PyObject *)a);
    Py_TRASHCAN_END
}

/* ------------------------------------------------------------------ Python API */

/* Array() or Array(iterable), for both ways of calling the type. */
static PyObject *
construct(PyObject *iterable)
{
    return iterable == NULL ? (PyObject *)array_alloc(0) : (PyObject *)array_from_iterable(iterable);
}

static PyObject *
array_vectorcall(PyObject *type, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t n = PyVectorcall_NARGS(nargsf);
    if (kwnames != NULL && PyTuple_GET_SIZE(kwnames) > 0) {
        PyErr_SetString(PyExc_TypeError, "Array() takes no keyword arguments");
        return NULL;
    }
    if (n > 1) {
        PyErr_SetString(PyExc_TypeError, "Array() takes at most one argument");
        return NULL;
    }
    return construct(n == 0 ? NULL : args[0]);
}

static PyObject *
array_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *iterable = NULL;
    if (kwargs != NULL && PyDict_GET_SIZE(kwargs) > 0) {
        PyErr_SetString(PyExc_TypeError, "Array() takes no keyword arguments");
        return NULL;
    }
    if (!PyArg_UnpackTuple(args, "Array", 0, 1, &iterable))
        return NULL;
    return construct(iterable);
}

static PyObject *
array_append(ArrayObject *a, PyObject *v)
{
    if (append(a, v) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
array_push(ArrayObject *a, PyObject *v)
{
    if (append(a, v) < 0)
        return NULL;
    return PyFloat_FromDouble((double)a->size);
}

static PyObject *
array_pop(ArrayObject *a, PyObject *Py_UNUSED(ignored))
{
    if (a->size == 0) {
        PyErr_SetString(PyExc_IndexError, "pop from an empty Array");
        return NULL;
    }
    if (array_check_unpinned(a) < 0)
        return NULL;
    a->size--;
    if (a->kind == NUMBERS)
        return PyFloat_FromDouble(NUMS(a)[a->size]);
    return OBJS(a)[a->size];  /* the array's reference moves to the caller */
}

static PyObject *
array_copy(ArrayObject *a, PyObject *Py_UNUSED(ignored))
{
    return (PyObject *)array_from_iterable((PyObject *)a);
}

static PyObject *
array_tolist(ArrayObject *a, PyObject *Py_UNUSED(ignored))
{
    Py_ssize_t n = a->size;  /* once: compiled code of another thread may push in place meanwhile */
    PyObject *list = PyList_New(n);
    if (list == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = item(a, i);
        if (v == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, v);
    }
    return list;
}

static PyObject *
array_reduce(ArrayObject *a, PyObject *Py_UNUSED(ignored))
{
    PyObject *list = array_tolist(a, NULL);
    return list == NULL ? NULL : Py_BuildValue("O(N)", (PyObject *)&ArrayType, list);
}

static PyObject *
array_sizeof(ArrayObject *a, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromSsize_t((Py_ssize_t)sizeof(ArrayObject) + a->capacity * 8 + (a->items != NULL ? ALIGN : 0));
}

static PyObject *
array_repr(ArrayObject *a)
{
    int seen = Py_ReprEnter((PyObject *)a);
    if (seen != 0)
        return seen > 0 ? PyUnicode_FromString("Array(...)") : NULL;
    PyObject *list = array_tolist(a, NULL);
    PyObject *r = list == NULL ? NULL : PyUnicode_FromFormat("Array(%R)", list);
    Py_XDECREF(list);
    Py_ReprLeave((PyObject *)a);
    return r;
}

static PyObject *
array_richcompare(PyObject *self, PyObject *other, int op)
{
    if ((op != Py_EQ && op != Py_NE) || !(IS_ARRAY(other) || PyList_Check(other)))
        Py_RETURN_NOTIMPLEMENTED;
    ArrayObject *a = (ArrayObject *)self;
    Py_ssize_t n = a->size;  /* once: compiled code of another thread may push in place meanwhile */
    if (n != PyObject_Length(other))
        return PyBool_FromLong(op == Py_NE);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *x = item(a, i);
        PyObject *y = x == NULL ? NULL : PySequence_GetItem(other, i);
        int same = y == NULL ? -1 : PyObject_RichCompareBool(x, y, Py_EQ);
        Py_XDECREF(x);
        Py_XDECREF(y);
        if (same < 0)
            return NULL;
        if (!same)
            return PyBool_FromLong(op == Py_NE);
        if (n != PyObject_Length(other) || n != a->size)  /* a comparison changed a sequence */
            return PyBool_FromLong(op == Py_NE);
    }
    return PyBool_FromLong(op == Py_EQ);
}

static PyObject *
array_get_kind(ArrayObject *a, void *Py_UNUSED(closure))
{
    return PyUnicode_FromString(a->kind == NUMBERS ? "numbers" : "values");
}

/* ------------------------------------------------------------------ iteration */

typedef struct {
    PyObject_HEAD
    ArrayObject *array;   /* NULL once exhausted */
    Py_ssize_t next;
} ArrayIterObject;

static PyObject *
array_iter(ArrayObject *a)
{
    ArrayIterObject *it = PyObject_GC_New(ArrayIterObject, &ArrayIterType);
    if (it == NULL)
        return NULL;
    it->array = (ArrayObject *)Py_NewRef(a);
    it->next = 0;
    PyObject_GC_Track(it);
    return (PyObject *)it;
}

static PyObject *
iter_next(ArrayIterObject *it)
{
    ArrayObject *a = it->array;
    if (a == NULL)
        return NULL;
    if (it->next < a->size)
        return item(a, it->next++);
    it->array = NULL;
    Py_DECREF(a);
    return NULL;
}

static int
iter_traverse(ArrayIterObject *it, visitproc visit, void *arg)
{
    Py_VISIT(it->array);
    return 0;
}

static void
iter_dealloc(ArrayIterObject *it)
{
    PyObject_GC_UnTrack(it);
    Py_XDECREF(it->array);
    PyObject_GC_Del(it);
}

static PyTypeObject ArrayIterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "relay_lang._array.ArrayIterator",
    .tp_basicsize = sizeof(ArrayIterObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_dealloc = (destructor)iter_dealloc,
    .tp_traverse = (traverseproc)iter_traverse,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)iter_next,
};

/* ------------------------------------------------------------------ the type */

static PyMethodDef array_methods[] = {
    {"append", (PyCFunction)array_append, METH_O, "Adds v at the end (as list.append)."},
    {"push", (PyCFunction)array_push, METH_O, "Adds v at the end; returns the new length as a float (Relay's push)."},
    {"pop", (PyCFunction)array_pop, METH_NOARGS, "Removes and returns the last element."},
    {"copy", (PyCFunction)array_copy, METH_NOARGS, "A shallow copy, of the same kind."},
    {"tolist", (PyCFunction)array_tolist, METH_NOARGS, "The elements as a Python list."},
    {"__reduce__", (PyCFunction)array_reduce, METH_NOARGS, NULL},
    {"__sizeof__", (PyCFunction)array_sizeof, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef array_getset[] = {
    {"kind", (getter)array_get_kind, NULL, "'numbers' (a flat buffer of doubles) or 'values'.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PySequenceMethods array_as_sequence = {
    .sq_length = (lenfunc)array_length,
    .sq_item = (ssizeargfunc)array_item,
};

static PyMappingMethods array_as_mapping = {
    .mp_length = (lenfunc)array_length,
    .mp_subscript = (binaryfunc)array_subscript,
    .mp_ass_subscript = (objobjargproc)array_ass_subscript,
};

PyTypeObject ArrayType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "relay_lang._array.Array",
    .tp_doc = "A Relay array: a flat buffer of doubles while it holds only numbers, then any values.",
    .tp_basicsize = sizeof(ArrayObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = array_new,
    .tp_vectorcall = array_vectorcall,
    .tp_dealloc = (destructor)array_dealloc,
    .tp_traverse = (traverseproc)array_traverse,
    .tp_clear = (inquiry)array_clear,
    .tp_repr = (reprfunc)array_repr,
    .tp_hash = PyObject_HashNotImplemented,
    .tp_richcompare = array_richcompare,
    .tp_iter = (getiterfunc)array_iter,
    .tp_as_sequence = &array_as_sequence,
    .tp_as_mapping = &array_as_mapping,
    .tp_methods = array_methods,
    .tp_getset = array_getset,
};

/* ------------------------------------------------------------------ module */

static PyObject *
mod_pack(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    return (PyObject *)from_items(args, nargs);
}

static PyObject *
mod_filled(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "filled(n, value) takes two arguments");
        return NULL;
    }
    Py_ssize_t n = PyLong_AsSsize_t(args[0]);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "filled: n must be >= 0");
        return NULL;
    }
    ArrayObject *a = array_alloc(n);
    if (a == NULL)
        return NULL;
    PyObject *v = args[1];
    if (PyFloat_CheckExact(v)) {
        double x = PyFloat_AS_DOUBLE(v);
        for (Py_ssize_t i = 0; i < n; i++)
            NUMS(a)[i] = x;
    } else {
        become_values(a);
        for (Py_ssize_t i = 0; i < n; i++)
            OBJS(a)[i] = Py_NewRef(v);
    }
    a->size = n;
    return (PyObject *)a;
}

static PyObject *
mod_all_numbers(PyObject *Py_UNUSED(module), PyObject *a)
{
    if (!IS_ARRAY(a))
        Py_RETURN_FALSE;
    ArrayObject *arr = (ArrayObject *)a;
    if (arr->kind == NUMBERS)
        Py_RETURN_TRUE;
    for (Py_ssize_t i = 0; i < arr->size; i++)
        if (!PyFloat_CheckExact(OBJS(arr)[i]))
            Py_RETURN_FALSE;
    Py_RETURN_TRUE;
}

static PyObject *
mod_set_index_error(PyObject *Py_UNUSED(module), PyObject *hook)
{
    Py_XSETREF(index_error_hook, Py_NewRef(hook));
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"pack", (PyCFunction)(void (*)(void))mod_pack, METH_FASTCALL, "pack(*items): an Array of the items."},
    {"filled", (PyCFunction)(void (*)(void))mod_filled, METH_FASTCALL, "filled(n, v): an Array of n times v."},
    {"all_numbers", (PyCFunction)mod_all_numbers, METH_O, "Whether a is an Array holding only floats."},
    {"set_index_error", (PyCFunction)mod_set_index_error, METH_O,
     "Installs hook(array, key), which raises the error for a key that names no element."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef array_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "relay_lang._array",
    .m_doc = "Relay arrays: flat doubles while they hold only numbers, shared by both tiers.",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__array(void)
{
    if (PyType_Ready(&ArrayType) < 0 || PyType_Ready(&ArrayIterType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&array_module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Array", (PyObject *)&ArrayType) < 0
            || PyModule_AddFunctions(m, relay_abi_methods) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
