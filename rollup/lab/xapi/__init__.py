"""The XenAPI lab: a simulated pool and the XML-RPC server that speaks for it."""
