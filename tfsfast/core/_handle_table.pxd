# The C declarations that make _handle_table_py.py, the one source of the handle table (its
# contract is there), the compiled module tfsfast.core._handle_table: Cython compiles that file
# with these declarations (pure Python mode).

import cython


cdef class _Stream:
    cdef readonly object latest
    cdef readonly object earliest
    cdef readonly dict versions


cdef class HandleTable:
    cdef dict _streams

    @cython.locals(stream=_Stream)
    cpdef object find(self, str name, object version, int policy=*)
