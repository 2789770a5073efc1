"""The web app (`mmsearch serve`) and the static HTML pages (`--html`, `map`)."""
