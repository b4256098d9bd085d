"""`python -m blur_adv.demo --out=blur_families.png`: every kernel family on a photo (tools/demo.py).

Importing this module gives `blur_adv.tools.demo`.
"""
import sys

from blur_adv.tools import demo

if __name__ == "__main__":
  demo.run()
else:
  sys.modules[__name__] = demo
