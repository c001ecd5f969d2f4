# numpy's array C API, as tfsfast's compiled modules use it: Cython's ``numpy`` declarations
# (numpy's documented functions and macros: PyArray_DATA, PyArray_NDIM, PyArray_DIMS,
# PyArray_DESCR, PyArray_CHKFLAGS, PyArray_SetBaseObject ...), the one function they leave out, and
# ``new_array``, the one way these modules make an ndarray in C.
#
# numpy's C API is a table each extension module loads for itself: a module that cimports this
# calls ``cnp.import_array()`` at import, before anything here is used. setup.py compiles every
# module against numpy's headers, with the pre-1.7 (deprecated) API switched off.

cimport numpy as cnp
from cpython.object cimport PyTypeObject
from cpython.ref cimport Py_INCREF, PyObject


cdef extern from "numpy/arrayobject.h":
    # The ndarray type.
    PyTypeObject PyArray_Type
    # Not in Cython's declarations: ``descr`` is stolen (even when it fails), which Cython's
    # reference counting cannot express, so it is declared (and called) with a raw pointer.
    object PyArray_NewFromDescr(PyTypeObject* subtype, cnp.PyArray_Descr* descr, int nd,
                                const cnp.npy_intp* dims, const cnp.npy_intp* strides,
                                void* data, int flags, PyObject* obj)


cdef inline cnp.ndarray new_array(cnp.dtype descr, int nd, const cnp.npy_intp* dims,
                                  void* data, object base):
    """A C-contiguous ndarray of dtype ``descr`` and shape ``dims[:nd]`` (numpy's own strides).

    With ``data`` NULL, numpy allocates the memory (as ``np.empty``; zero-filled where the dtype
    needs it: an object array's items are NULL until set) and ``base`` must be None. Else the
    array is a writeable view of ``data``, which must be C-contiguous, aligned and large enough,
    and ``base`` is the object that keeps that memory alive: the array holds a reference to it
    (numpy's ``base``) until it is collected."""
    Py_INCREF(descr)  # the reference PyArray_NewFromDescr steals
    array = PyArray_NewFromDescr(&PyArray_Type, <cnp.PyArray_Descr*>descr, nd, dims, NULL,
                                 data, cnp.NPY_ARRAY_CARRAY if data != NULL else 0, NULL)
    if base is not None:
        # (numpy's set_array_base, without the error check after a call declared ``except *``)
        Py_INCREF(base)  # the reference PyArray_SetBaseObject steals, even when it fails
        cnp.PyArray_SetBaseObject(<cnp.ndarray>array, base)
    return <cnp.ndarray>array
