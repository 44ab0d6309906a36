"""gateway: Rubin/LSST and ZTF Avro alerts in, IVOA VOEvents out (VTP, TAP, forwards).

The flow is one way (see DESIGN.md): sources -> alerts.decode -> voevent.build -> Event -> router -> sinks.
"""

__version__ = "0.1.0"
