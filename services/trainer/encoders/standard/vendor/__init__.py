"""Video network definitions after torchvision's (BSD-3-Clause; see LICENSE and NOTICE here)."""
