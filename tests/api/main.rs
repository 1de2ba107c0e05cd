//! The integration tests: one binary, a file per feature, every test over a real socket against
//! a real PostgreSQL.

mod accounts;
mod auth;
mod compression;
mod connections;
mod crash;
mod feed;
mod group_commit;
mod guide;
mod hardening;
mod helpers;
mod history;
mod hostile;
mod ingest;
mod openapi;
mod operations;
mod pooler;
mod replica;
mod signature;
mod status;
mod store;
mod stream;
mod tls;
