"""The Chalice project and its stages, as the local runtime (`trickle_local`) and the deploy tools
(`trickle_deploy`) both read them: the config and a stage's environment (`stage`), the AWS resources a
stage needs and the code that makes them (`resources`), clients for an endpoint (`aws`), and the
example state machine (`workflows`). Those two packages import this one and never each other
(tests/unit/test_packages.py); this one imports only `chalicelib`."""
