"""Computer vision without downloaded weights: faces (dlib) and subject/background masks."""
