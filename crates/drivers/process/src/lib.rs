//! paddock-driver-process
