"""Pictures from files: decoding (Pillow, HEIC, camera RAW), EXIF, content fingerprints, and
preprocessing into a model's input."""
