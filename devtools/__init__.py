"""Development tooling outside the kernel: the shop simulator and its in-process anchor.

It may import the kernel, the contracts and the services' pure cores; no product
code imports it except the composition root's ``simulate`` and ``demo`` commands.
"""
