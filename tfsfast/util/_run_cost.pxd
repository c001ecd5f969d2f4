# The compiled RunCost: declarations. See _run_cost.pyx; _run_cost_py.py holds the twin and the
# contract.

cdef class RunCost:
    # The estimate in seconds; NaN until the first run (the twin's None).
    cdef double _seconds
    cdef bint _spiked
    cdef double _next_probe
    cdef bint _allowed

    cpdef add(self, double elapsed)
    cpdef bint below(self, double limit)
    cpdef bint allows(self, double limit, object now=*)
