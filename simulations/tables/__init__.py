"""The paper's Tables 1-6 beside ours: ``python -m simulations.tables`` (see ``__main__``).

Modules: ``scale`` (the scale files), ``plan`` (rows and tasks), ``federation`` (capture
runs and targets, made in process with the real ClientApp), ``engines`` (the only calls
into the attack engines), ``runner`` (resumable, parallel execution), ``figures`` and
``stats`` (figures with 95% intervals), ``render`` and ``plots`` (the outputs).
"""
