"""`python -m blur_adv.fit --sharp=a.png --blurred=b.png`: rank kernel families (tools/fit.py).

Importing this module gives `blur_adv.tools.fit`.
"""
import sys

from blur_adv.tools import fit

if __name__ == "__main__":
  fit.run()
else:
  sys.modules[__name__] = fit
