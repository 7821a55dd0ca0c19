"""The app's database before this project: its old models and hand-run scripts, to build
the legacy shapes that adoption converts (migrations/adoption/shapes.py)."""
