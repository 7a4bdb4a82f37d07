"""The XenServer / XCP-ng driver, through the official XenAPI client."""
