-- The feed (SPEC §9): every event gets a position, (feed_xid, feed_seq), kept for ever.
--
-- feed_xid is the id of the transaction that stored the event (pg_current_xact_id(), 64 bits, so
-- it never wraps), feed_seq a sequence value taken as the row is inserted. Neither alone follows
-- commit order: both are taken before the commit, and transactions commit out of order. What
-- closes that gap is the reader: the feed only ever shows events whose feed_xid is below the
-- xmin of its statement's snapshot — every transaction with a smaller id has then committed or
-- rolled back, so no event can appear later at a position below one already shown. See README,
-- "Following the store".
--
-- Events stored before this migration are all committed: they get feed_xid 0 (before every real
-- transaction id) and a feed_seq in the order the table holds them.

create sequence events_feed_seq;

alter table events
    add column feed_xid bigint not null default 0,
    add column feed_seq bigint;

update events set feed_seq = nextval('events_feed_seq');

alter table events
    alter column feed_seq set not null,
    alter column feed_seq set default nextval('events_feed_seq'),
    alter column feed_xid set default (pg_current_xact_id()::text::bigint);
alter sequence events_feed_seq owned by events.feed_seq;

-- /feed walks this index from a position on; /workspaces/{id}/feed the second one.
create index events_feed on events (feed_xid, feed_seq);
create index events_workspace_feed on events (workspace_id, feed_xid, feed_seq);
