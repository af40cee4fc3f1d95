/* What the two sources of the _array extension share: the Array object's layout, and the few
 * functions one calls in the other.
 *
 *   _array.c  the Array type and the module (its Python API)
 *   _abi.c    the C side of the compiled-code ABI (compiler/abi.py is the Python side): the
 *             functions compiled code calls, the layout it reads, the pins by which it holds
 *             arrays, the process's resident memory
 *
 * Shared functions are hidden: the extension exports only its init function.
 */
#ifndef RELAY_ARRAY_H
#define RELAY_ARRAY_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define RELAY_HIDDEN __attribute__((visibility("hidden")))

enum { NUMBERS = 0, VALUES = 1 };

typedef struct {
    PyObject_HEAD
    Py_ssize_t size;
    void *items;          /* double * (NUMBERS) or PyObject ** (VALUES); NULL when capacity is 0 */
    Py_ssize_t kind;
    Py_ssize_t capacity;
    Py_ssize_t pins;      /* compiled calls holding this array now (changed under the GIL) */
    void *pin_owner;      /* the runtime state of the call that pinned it first, NULL when none */
    Py_ssize_t owner_pins;  /* the pins of pin_owner: it alone holds the array when owner_pins == pins */
    Py_ssize_t deferred;  /* reference count changes compiled code made while it was pinned (atomic) */
} ArrayObject;

#define NUMS(a) ((double *)(a)->items)
#define OBJS(a) ((PyObject **)(a)->items)
#define IS_ARRAY(o) Py_IS_TYPE((o), &ArrayType)

/* _array.c */
RELAY_HIDDEN extern PyTypeObject ArrayType;
RELAY_HIDDEN ArrayObject *array_alloc(Py_ssize_t capacity);  /* a NUMBERS array of size 0, or NULL */
RELAY_HIDDEN int array_reserve(ArrayObject *a, Py_ssize_t needed);  /* room for `needed`; -1 when out of memory */
RELAY_HIDDEN ArrayObject *array_from_iterable(PyObject *iterable);  /* a copy, or NULL */

/* _abi.c */
RELAY_HIDDEN int array_check_unpinned(ArrayObject *a);  /* -1 with the busy error set when compiled code holds it */
RELAY_HIDDEN extern PyMethodDef relay_abi_methods[];  /* the module's functions about compiled code */

#endif
