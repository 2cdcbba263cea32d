"""What the tests (and bench/) share: the simulated cluster (``simcluster``, its pytest fixtures in
``cluster_fixtures``), jobs that are killed, stalled or resumed (``fault_jobs``), data sets as other
tools write them (``foreign_formats``) and a fresh Debian root (``debian_root``). Importable because
pyproject's pytest ``pythonpath`` puts tests/ on the path; bench scripts run with PYTHONPATH=tests."""
