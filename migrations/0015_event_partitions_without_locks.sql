-- event_partitions (0009) without a lock on any partition: pg_get_expr given the partition's oid
-- opens it, and so waited behind a removal finishing a half-detached month (`detach …
-- finalize` holds that month under an access exclusive lock while it waits for older
-- transactions). A bound holds only constants, so it reads the same without the relation.
create or replace view event_partitions as
select c.relname::text as name,
       substring(b.bound from $re$FROM \('([^']*)'\)$re$)::timestamptz as received_from,
       substring(b.bound from $re$TO \('([^']*)'\)$re$)::timestamptz as received_to,
       c.reltuples as rows,
       i.inhdetachpending as pending
from pg_inherits i
join pg_class c on c.oid = i.inhrelid
cross join lateral (select pg_get_expr(c.relpartbound, 0) as bound) b
where i.inhparent = 'events'::regclass;
