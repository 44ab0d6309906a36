"""twistd plugin: ``twistd -n vogateway [options]`` runs the same gateway as ``vogateway serve``.

No __init__.py beside this file, on purpose: twisted/plugins is a namespace Twisted extends with every sys.path entry.
"""

from twisted.application.service import ServiceMaker

vogateway = ServiceMaker("vogateway", "gateway.twistd", "Avro alerts to VOEvents: VTP broker, TAP, forwards.",
                         "vogateway")
