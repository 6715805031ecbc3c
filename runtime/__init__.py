"""The composition root: the ``learnloop`` command line, the embedded and distributed
wiring, and process launching and supervision.

The only package that imports the service packages (``app``, ``join_service``,
``online_learner``, ``offline_learner``); see ``docs/architecture.md``.
"""
