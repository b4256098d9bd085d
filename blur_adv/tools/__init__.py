"""Command-line tools: `python -m blur_adv.fit` (fit kernel families to image pairs) and
`python -m blur_adv.demo` (every family applied to a photo)."""
