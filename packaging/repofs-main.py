# /usr/lib/repofs/repofs: what /usr/bin/repofs runs, as
#   /usr/lib/repofs/venv/bin/python3 -I /usr/lib/repofs/repofs ARGS...
# A plain file, not a script: the interpreter is named by the wrapper, so no shebang
# points into the virtual environment. Its name is what click shows as the program
# name (and derives the _REPOFS_COMPLETE variable of the completions from).
from repofs_cli.main import main

main()
