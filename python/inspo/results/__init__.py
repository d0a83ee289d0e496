"""The results of docs/RESULTS.md: the grid (a sweep on inspo.sweep), its statistics, the computed parts of
the discussion, the generated regions of RESULTS.md, the figures and `inspo reproduce`."""
