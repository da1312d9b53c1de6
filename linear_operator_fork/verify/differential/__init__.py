"""The differential test harness: stock vs fork vs a dense float64 reference, on seeded cases of what users write.

Users write one model, ``L K Lᵀ + D`` with ``L`` a sparse N × n torch tensor wrapped in ``SparseLinearOperator``,
``K = R Rᵀ`` and ``D`` a diagonal noise, in many spellings and layouts, and do many things with it (train,
solve, densify chains, index, transpose, edit the tensor in place, pass bad inputs). The harness generates cases
over that space with hypothesis (:mod:`.space`; each case is plain data with a canonical key, :mod:`.case`), runs
each one on the installed linear_operator (:mod:`.scenarios`, in a child process that may crash: :mod:`.runner`),
compares the outputs with a dense float64 computation in plain torch from the same seeded data (:mod:`.data`,
:mod:`.reference`, :mod:`.outcome`), and compares the fork with stock (:mod:`.verdict`).

The rule: the fork succeeds wherever stock succeeds and agrees with it, unless it is closer to the reference; the
fork is never silently wrong (numbers where an error is due, or numbers off the reference beyond tolerance).

    python -m linear_operator_fork.verify.differential {generate,run,compare,replay}   (nox -s differential)
"""
