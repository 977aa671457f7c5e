"""Local stand-ins for every platform API, speaking each platform's wire protocol.

A product feature (exercises, training, demos) and the backbone of the tests: the
real client libraries are pointed at it. It accepts any credential except the
literal value ``revoked``, records every post, and injects faults on request
(see app.py for the inspection endpoints).
"""
