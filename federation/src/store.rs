//! TODO (federation I/O).
