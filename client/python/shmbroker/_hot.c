/*
 * shmbroker._hot: the per-batch library calls of the Python binding, without ctypes.
 *
 * On the fast path a take or a give is a few hundred nanoseconds of C; through ctypes the
 * same call costs microseconds, most of it building an object for every argument and
 * out-parameter and reading the sb_batch struct field by field. client.py makes its
 * per-batch calls here when this module is built, and through ctypes when it is not (a
 * pip install on a machine without python3-dev): same calls, same results.
 *
 * It links against nothing: bind() receives the addresses of libshmbroker's functions as
 * ctypes loaded them (_lib.py), so the process holds one copy of the library, the one
 * whose pool handles the binding has. Every call releases the GIL while it may wait, as
 * ctypes does; the caller holds the client's lock (client.py's _Connection).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>

#include "shmbroker.h"

#define NO_SLOT UINT32_MAX

static int (*fn_acquire)(sb_pool *, int, void **, uint32_t *, size_t *);
static int (*fn_publish_acquire)(sb_pool *, uint32_t, size_t, int64_t, const char *, int, void **, uint32_t *,
                                 size_t *);
static int (*fn_release_consume)(sb_pool *, sb_batch *, int);
static int (*fn_consume)(sb_pool *, int, sb_batch *);
static sb_code (*fn_client_code)(const sb_client *);

static int arg_count(const char *name, Py_ssize_t n, Py_ssize_t want) {
        if (n == want)
                return 0;
        PyErr_Format(PyExc_TypeError, "%s() takes %zd arguments (%zd given)", name, want, n);
        return -1;
}

/* An int argument (PyLong_AsInt() is public only from Python 3.13). */
static int as_int(PyObject *o) {
        long v = PyLong_AsLong(o);

        if (v > INT_MAX || v < INT_MIN) {
                PyErr_SetString(PyExc_OverflowError, "timeout out of range");
                return -1;
        }
        return (int)v;
}

static int bound(void) {
        if (fn_acquire && fn_publish_acquire && fn_release_consume && fn_consume && fn_client_code)
                return 0;
        PyErr_SetString(PyExc_RuntimeError, "shmbroker._hot: bind() was not called");
        return -1;
}

/* bind(acquire, publish_acquire, release_consume, consume, client_code): the functions'
 * addresses, as ints. */
static PyObject *hot_bind(PyObject *self, PyObject *const *args, Py_ssize_t n) {
        void *a[5];

        (void)self;
        if (arg_count("bind", n, 5) < 0)
                return NULL;
        for (int i = 0; i < 5; i++) {
                a[i] = PyLong_AsVoidPtr(args[i]);
                if (!a[i]) {
                        if (!PyErr_Occurred())
                                PyErr_SetString(PyExc_ValueError, "bind(): a function address is 0");
                        return NULL;
                }
        }
        fn_acquire = (int (*)(sb_pool *, int, void **, uint32_t *, size_t *))a[0];
        fn_publish_acquire = (int (*)(sb_pool *, uint32_t, size_t, int64_t, const char *, int, void **, uint32_t *,
                                      size_t *))a[1];
        fn_release_consume = (int (*)(sb_pool *, sb_batch *, int))a[2];
        fn_consume = (int (*)(sb_pool *, int, sb_batch *))a[3];
        fn_client_code = (sb_code (*)(const sb_client *))a[4];
        Py_RETURN_NONE;
}

/* acquire(pool, timeout_ms) -> the slot taken, or -errno. */
static PyObject *hot_acquire(PyObject *self, PyObject *const *args, Py_ssize_t n) {
        sb_pool *p;
        int timeout_ms, r;
        void *ptr;
        uint32_t slot;
        size_t cap;

        (void)self;
        if (arg_count("acquire", n, 2) < 0 || bound() < 0)
                return NULL;
        p = PyLong_AsVoidPtr(args[0]);
        timeout_ms = as_int(args[1]);
        if (PyErr_Occurred())
                return NULL;
        Py_BEGIN_ALLOW_THREADS
        r = fn_acquire(p, timeout_ms, &ptr, &slot, &cap);
        Py_END_ALLOW_THREADS
        return PyLong_FromLongLong(r < 0 ? (long long)r : (long long)slot);
}

/*
 * publish_acquire(pool, client, slot, nbytes, seq, meta) -> (rc, next slot or NO_SLOT):
 * publish, and take the next slot only if one is free now. No free slot is no failure:
 * the library reports it as a timeout of the acquire (code "timeout", nothing taken),
 * which comes back here as rc 0.
 */
static PyObject *hot_publish_acquire(PyObject *self, PyObject *const *args, Py_ssize_t n) {
        sb_pool *p;
        const sb_client *c;
        unsigned long slot;
        size_t nbytes;
        long long seq;
        const char *meta;
        void *ptr;
        uint32_t next = NO_SLOT;
        size_t cap;
        int r;

        (void)self;
        if (arg_count("publish_acquire", n, 6) < 0 || bound() < 0)
                return NULL;
        p = PyLong_AsVoidPtr(args[0]);
        c = PyLong_AsVoidPtr(args[1]);
        slot = PyLong_AsUnsignedLong(args[2]);
        nbytes = PyLong_AsSize_t(args[3]);
        seq = PyLong_AsLongLong(args[4]);
        if (PyErr_Occurred())
                return NULL;
        if (slot > UINT32_MAX) {
                PyErr_SetString(PyExc_OverflowError, "publish_acquire(): slot out of range");
                return NULL;
        }
        meta = PyBytes_AsString(args[5]);       /* NUL-terminated; a NUL inside is the daemon's to refuse */
        if (!meta)
                return NULL;
        Py_BEGIN_ALLOW_THREADS
        r = fn_publish_acquire(p, (uint32_t)slot, nbytes, (int64_t)seq, meta, 0, &ptr, &next, &cap);
        Py_END_ALLOW_THREADS
        if (r == -ETIMEDOUT && next == NO_SLOT && fn_client_code(c) == SB_CODE_TIMEOUT)
                r = 0;
        return Py_BuildValue("(ik)", r, (unsigned long)next);
}

/*
 * next_batch(pool, prev, timeout_ms) -> (slot, nbytes, seq, stream, meta), None at the end
 * of a stream, or -errno: release batch @prev (-1: none) and consume the next, in one call.
 * The meta is copied out before the call returns: the library's text lasts only until the
 * next call on the client.
 */
static PyObject *hot_next_batch(PyObject *self, PyObject *const *args, Py_ssize_t n) {
        sb_pool *p;
        long prev;
        int timeout_ms, r;
        sb_batch b = { 0 };

        (void)self;
        if (arg_count("next_batch", n, 3) < 0 || bound() < 0)
                return NULL;
        p = PyLong_AsVoidPtr(args[0]);
        prev = PyLong_AsLong(args[1]);
        timeout_ms = as_int(args[2]);
        if (PyErr_Occurred())
                return NULL;
        if (prev > (long)UINT32_MAX) {
                PyErr_SetString(PyExc_OverflowError, "next_batch(): slot out of range");
                return NULL;
        }
        Py_BEGIN_ALLOW_THREADS
        if (prev >= 0) {
                b.slot = (uint32_t)prev;
                r = fn_release_consume(p, &b, timeout_ms);
        } else {
                r = fn_consume(p, timeout_ms, &b);
        }
        Py_END_ALLOW_THREADS
        if (r < 0)
                return PyLong_FromLong(r);
        if (b.eof)
                Py_RETURN_NONE;
        return Py_BuildValue("(kKKKy)", (unsigned long)b.slot, (unsigned long long)b.nbytes,
                             (unsigned long long)b.seq, (unsigned long long)b.stream, b.meta ? b.meta : "{}");
}

static PyMethodDef hot_methods[] = {
        { "bind", (PyCFunction)(void (*)(void))hot_bind, METH_FASTCALL, "bind(acquire, publish_acquire, "
          "release_consume, consume, client_code): libshmbroker's functions, by address" },
        { "acquire", (PyCFunction)(void (*)(void))hot_acquire, METH_FASTCALL,
          "acquire(pool, timeout_ms) -> slot, or -errno" },
        { "publish_acquire", (PyCFunction)(void (*)(void))hot_publish_acquire, METH_FASTCALL,
          "publish_acquire(pool, client, slot, nbytes, seq, meta) -> (rc, next slot or 0xffffffff)" },
        { "next_batch", (PyCFunction)(void (*)(void))hot_next_batch, METH_FASTCALL,
          "next_batch(pool, prev slot or -1, timeout_ms) -> (slot, nbytes, seq, stream, meta), None, or -errno" },
        { NULL, NULL, 0, NULL },
};

static struct PyModuleDef hot_module = {
        PyModuleDef_HEAD_INIT, "shmbroker._hot", "The per-batch calls of libshmbroker, without ctypes.", -1,
        hot_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__hot(void);
PyMODINIT_FUNC PyInit__hot(void) {
        return PyModule_Create(&hot_module);
}
