# The C declarations that make _run_cost_py.py, the one source of RunCost (its contract is
# there), the compiled module tfsfast.util._run_cost: Cython compiles that file with these
# declarations (pure Python mode). Modules that cimport RunCost call add, below and allows in C.

import cython

cdef double SPIKE_FACTOR
cdef double RISE
cdef double PROBE_INTERVAL
cdef double PROBE_SHARE
cdef double STAY_FACTOR


cdef class RunCost:
    cdef double _limit
    cdef double _seconds
    cdef bint _measured
    cdef bint _spiked
    cdef double _next_probe
    cdef bint _allowed

    @cython.locals(cost=double)
    cpdef add(self, double elapsed)

    cpdef bint below(self)

    @cython.locals(cost=double, limit=double, at=double, due=double, next_probe=double)
    cpdef bint allows(self, object now=*)
