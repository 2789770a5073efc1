"""What the tests make for themselves: drawn shapes, phone photos with EXIF, camera RAW files."""
