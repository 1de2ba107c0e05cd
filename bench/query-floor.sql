-- The arguments of bench/pgbench-query/*.sql, drawn like `loadgen query` draws its own: every
-- workspace, 200 deep-page cursors (the 500th newest event of a random workspace, so the page
-- after 10 pages of 50), 20,000 hook ids sampled from the whole store.
--
--   psql -v deep_pages=10 -v limit=50 -f bench/query-floor.sql <database>

\set ON_ERROR_STOP on
set client_min_messages = warning;
drop table if exists bench_workspaces, bench_deep, bench_ids;

create table bench_workspaces as
    select row_number() over (order by workspace_id) as n, workspace_id from workspaces;

create table bench_deep as
    select row_number() over () as n, workspace_id, occurred_at, hook_id
    from (select workspace_id from workspaces order by random() limit 200) as w,
         lateral (select occurred_at, hook_id from events e
                  where e.workspace_id = w.workspace_id
                  order by occurred_at desc, hook_id desc
                  offset :deep_pages * :limit - 1 limit 1) as cursor;

create table bench_ids as
    select row_number() over () as n, hook_id
    from (select hook_id from events tablesample system (0.1) limit 20000) as sample;

alter table bench_workspaces add primary key (n);
alter table bench_deep add primary key (n);
alter table bench_ids add primary key (n);
analyze bench_workspaces, bench_deep, bench_ids;
select (select count(*) from bench_workspaces) as workspaces,
       (select count(*) from bench_deep) as deep,
       (select count(*) from bench_ids) as ids \gset
