#!/bin/sh
# /usr/bin/repofs: start repofs from its private virtual environment under
# /usr/lib/repofs/venv (why: /usr/share/doc/repofs/README.packaging.md).
# -I isolates the interpreter from PYTHONPATH, PYTHONHOME, the user's site-packages
# and the current directory, so nobody can make a root backup job import their code.
exec /usr/lib/repofs/venv/bin/python3 -I /usr/lib/repofs/repofs "$@"
