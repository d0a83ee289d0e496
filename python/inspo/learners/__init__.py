"""The learners: InSPO (`inspo.py`), BC (`bc.py`), OMIGA (`omiga.py`), CFCQL (`cfcql.py`), each a
`learner.Learner` for S seeds at once; `ops.py` is the switch between the fused ops and their PyTorch twins."""
