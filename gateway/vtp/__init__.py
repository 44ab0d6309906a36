"""VOEvent Transport Protocol: framing, transport messages, broker, receiver, author and subscriber clients.

``service.vtp_services(config, pipeline)`` assembles them from the ``[vtp]`` config section.
"""
