"""Scale-out mode: Forward ingress → NATS JetStream partitions → scoring workers.

See the README's "Scale-out with NATS JetStream" section; :mod:`.ingress` (the sink
``logsieve serve --nats`` uses), :mod:`.worker` (``logsieve worker``), :mod:`.lease`
(who owns a partition), :mod:`.tracker` (when a message may be acked).
"""
