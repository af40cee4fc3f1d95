/* The C side of the compiled-code ABI (compiler/abi.py is the Python side, and checks this one
 * when the LLVM tier starts: `layout()` and `addresses()`).
 *
 * Compiled code reads an Array's fields at fixed offsets (`layout()`: size, items, kind,
 * capacity, and pins, pin_owner, owner_pins: it pushes in place while there is room and no
 * other call holds the array), and calls the functions of `addresses()`: the table below.
 *
 * Compiled code runs without the GIL (compiler/builder.py), so an array it holds
 * must not be freed, resized or switched to VALUES by another thread meanwhile.
 * The compiled entry point pins each array argument (under the GIL) for the
 * whole call: while `pins` is not 0, the interpreter's resizing paths (push,
 * pop, a kind switch) refuse with the Relay error of the busy hook, and
 * compiled code pushes onto an array only when every pin is its own (`pin_owner`,
 * `owner_pins`). Its pushes in place (no GIL) only make `size` grow: code holding
 * the GIL reads an array's size once per operation.
 * Compiled code changes the reference count of a pinned array in `deferred`
 * (atomically, no GIL), which the unpin adds to the object's own count; an
 * array it made itself is private to its thread until returned, so it counts
 * those directly (a NUMBERS array is never tracked by the cycle collector, so
 * no other thread can reach it through gc.get_objects()). Anything that
 * allocates, frees or touches other objects takes the GIL first (WITH_GIL).
 *
 * The process's resident memory is read here, once for everything that asks: compiled code's
 * memory checks (through the table) and the interpreter's (`resident_bytes()`, budget.py).
 */
#include "_array.h"

#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* This thread's state while its compiled code runs without the GIL (NULL: it holds the GIL). */
static _Thread_local PyThreadState *released;

#define WITH_GIL_BEGIN { PyThreadState *gil_saved_ = released; \
    if (gil_saved_ != NULL) { released = NULL; PyEval_RestoreThread(gil_saved_); }
#define WITH_GIL_END if (gil_saved_ != NULL) released = PyEval_SaveThread(); }

static PyObject *busy_error_hook;   /* hook(array): raises the Relay error for resizing a pinned array */

/* ------------------------------------------------------------------ pins, for the interpreter */

/* -1 with the busy hook's error set when compiled code in another thread holds the array. */
int
array_check_unpinned(ArrayObject *a)
{
    if (a->pins == 0)
        return 0;
    if (busy_error_hook == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "the Array is in use by compiled code in another thread");
        return -1;
    }
    PyObject *r = PyObject_CallOneArg(busy_error_hook, (PyObject *)a);
    if (r != NULL) {  /* the hook must raise */
        Py_DECREF(r);
        PyErr_SetString(PyExc_SystemError, "the Array busy hook returned");
    }
    return -1;
}

/* ------------------------------------------------------------------ arrays and the GIL
 * Called by compiled code, with or without the GIL (see `released`). They never leave a
 * Python exception set: compiled code reports a failure as its own error. */

/* A NUMBERS array of n elements the caller writes, every one, before anything reads them; or NULL. */
static ArrayObject *
relay_array_new(Py_ssize_t n)
{
    ArrayObject *a;
    WITH_GIL_BEGIN
    a = array_alloc(n);
    if (a == NULL)
        PyErr_Clear();
    else
        a->size = n;
    WITH_GIL_END
    return a;
}

/* Appends v to a NUMBERS array (its buffer is full): 0, -1 when memory runs out, -2 when
 * compiled code of another thread holds the array (growing would free the buffer it reads). */
static int
relay_array_push(ArrayObject *a, double v, void *owner)
{
    int status = 0;
    WITH_GIL_BEGIN
    if (a->pins != 0 && (a->pin_owner != owner || a->owner_pins != a->pins))
        status = -2;
    else if (array_reserve(a, a->size + 1) < 0) {
        PyErr_Clear();
        status = -1;
    } else
        NUMS(a)[a->size++] = v;
    WITH_GIL_END
    return status;
}

/* A copy of a NUMBERS array, or NULL. */
static ArrayObject *
relay_array_copy(ArrayObject *a)
{
    ArrayObject *r;
    WITH_GIL_BEGIN
    r = array_from_iterable((PyObject *)a);
    if (r == NULL)
        PyErr_Clear();
    WITH_GIL_END
    return r;
}

/* A new reference held by compiled code. */
static void
relay_array_incref(ArrayObject *a)
{
    if (__atomic_load_n(&a->pins, __ATOMIC_RELAXED) != 0)
        __atomic_fetch_add(&a->deferred, 1, __ATOMIC_RELAXED);
    else
        Py_SET_REFCNT(a, Py_REFCNT(a) + 1);  /* private to this thread: nothing else can count it */
}

/* Drops a reference compiled code held (NULL: none); the last one frees the array, with the GIL. */
static void
relay_array_decref(ArrayObject *a)
{
    if (a == NULL)
        return;
    if (__atomic_load_n(&a->pins, __ATOMIC_RELAXED) != 0)
        __atomic_fetch_sub(&a->deferred, 1, __ATOMIC_RELAXED);
    else if (Py_REFCNT(a) > 1)
        Py_SET_REFCNT(a, Py_REFCNT(a) - 1);
    else {
        WITH_GIL_BEGIN
        Py_DECREF(a);
        WITH_GIL_END
    }
}

/* Pins an array argument for a compiled call whose runtime state is owner (with the GIL). */
static void
relay_array_pin(ArrayObject *a, void *owner)
{
    if (a->pins++ == 0) {
        a->pin_owner = owner;
        a->owner_pins = 0;
    }
    if (a->pin_owner == owner)
        a->owner_pins++;
}

/* Ends owner's pin (with the GIL): the reference counts compiled code deferred are applied. */
static void
relay_array_unpin(ArrayObject *a, void *owner)
{
    Py_ssize_t d = __atomic_exchange_n(&a->deferred, 0, __ATOMIC_ACQ_REL);
    if (a->pin_owner == owner)
        a->owner_pins--;
    if (--a->pins == 0)
        a->pin_owner = NULL;
    Py_SET_REFCNT(a, Py_REFCNT(a) + d + 1);
    Py_DECREF(a);  /* frees it when the deferred changes dropped its last reference */
}

/* Lets other threads run Python while this thread's compiled code runs (once per call). */
static void
relay_gil_release(void)
{
    if (released == NULL)
        released = PyEval_SaveThread();
}

/* Takes the GIL back before compiled code returns to the interpreter. */
static void
relay_gil_reacquire(void)
{
    PyThreadState *t = released;
    if (t != NULL) {
        released = NULL;
        PyEval_RestoreThread(t);
    }
}


/* ------------------------------------------------------------------ resident memory */

/* The process's resident memory in bytes: the second field of /proc/self/statm (pages) times the
 * page size; where that cannot be read, the peak so far (getrusage; kilobytes on Linux). Plain
 * C, no Python: compiled code calls it without the GIL. */
static int64_t
relay_resident_bytes(void)
{
    char text[256];
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = read(fd, text, sizeof text - 1);
        close(fd);
        if (n > 0) {
            text[n] = '\0';
            const char *field = strchr(text, ' ');  /* past the first field, the total size */
            if (field != NULL && field[1] >= '0' && field[1] <= '9')
                return (int64_t)strtoll(field + 1, NULL, 10) * (int64_t)sysconf(_SC_PAGESIZE);
        }
    }
    struct rusage usage;
    if (getrusage(RUSAGE_SELF, &usage) != 0)
        return 0;
    return (int64_t)usage.ru_maxrss * 1024;
}

/* ------------------------------------------------------------------ module functions */

#define ENTRY(name) #name, PyLong_FromVoidPtr((void *)name)

static PyObject *
mod_addresses(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return Py_BuildValue("{s:N,s:N,s:N,s:N,s:N,s:N,s:N,s:N,s:N,s:N}",
                         ENTRY(relay_array_new), ENTRY(relay_array_push), ENTRY(relay_array_copy),
                         ENTRY(relay_array_incref), ENTRY(relay_array_decref),
                         ENTRY(relay_array_pin), ENTRY(relay_array_unpin),
                         ENTRY(relay_gil_release), ENTRY(relay_gil_reacquire),
                         ENTRY(relay_resident_bytes));
}

static PyObject *
mod_layout(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return Py_BuildValue("{s:n,s:n,s:n,s:n,s:n,s:n,s:n,s:n}",
                         "size", (Py_ssize_t)offsetof(ArrayObject, size),
                         "items", (Py_ssize_t)offsetof(ArrayObject, items),
                         "kind", (Py_ssize_t)offsetof(ArrayObject, kind),
                         "capacity", (Py_ssize_t)offsetof(ArrayObject, capacity),
                         "pins", (Py_ssize_t)offsetof(ArrayObject, pins),
                         "pin_owner", (Py_ssize_t)offsetof(ArrayObject, pin_owner),
                         "owner_pins", (Py_ssize_t)offsetof(ArrayObject, owner_pins),
                         "numbers", (Py_ssize_t)NUMBERS);
}

static PyObject *
mod_resident_bytes(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    int64_t resident;
    Py_BEGIN_ALLOW_THREADS  /* system calls: other threads run meanwhile, as around Python's own I/O */
    resident = relay_resident_bytes();
    Py_END_ALLOW_THREADS
    return PyLong_FromLongLong(resident);
}

static PyObject *
mod_holds_numbers(PyObject *Py_UNUSED(module), PyObject *a)
{
    return PyBool_FromLong(IS_ARRAY(a) && ((ArrayObject *)a)->kind == NUMBERS);
}

static PyObject *
mod_set_busy_error(PyObject *Py_UNUSED(module), PyObject *hook)
{
    Py_XSETREF(busy_error_hook, Py_NewRef(hook));
    Py_RETURN_NONE;
}

static PyObject *
mod_pins(PyObject *Py_UNUSED(module), PyObject *a)
{
    if (!IS_ARRAY(a)) {
        PyErr_SetString(PyExc_TypeError, "pins() takes an Array");
        return NULL;
    }
    return PyLong_FromSsize_t(((ArrayObject *)a)->pins);
}

static PyObject *
mod_stack_pointer(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromVoidPtr(__builtin_frame_address(0));
}

PyMethodDef relay_abi_methods[] = {
    {"addresses", (PyCFunction)mod_addresses, METH_NOARGS, "The C functions compiled code calls, by name."},
    {"layout", (PyCFunction)mod_layout, METH_NOARGS, "Byte offsets of the fields compiled code reads."},
    {"resident_bytes", (PyCFunction)mod_resident_bytes, METH_NOARGS,
     "The process's resident memory in bytes (Linux); elsewhere its peak so far."},
    {"holds_numbers", (PyCFunction)mod_holds_numbers, METH_O,
     "Whether a is an Array of the numbers kind (what compiled code takes)."},
    {"set_busy_error", (PyCFunction)mod_set_busy_error, METH_O,
     "Installs hook(array), which raises the error for resizing an array compiled code holds."},
    {"pins", (PyCFunction)mod_pins, METH_O, "How many compiled calls hold the array now."},
    {"stack_pointer", (PyCFunction)mod_stack_pointer, METH_NOARGS, "About where this thread's native stack is now."},
    {NULL, NULL, 0, NULL},
};
