//! paddock-store-sqlite
