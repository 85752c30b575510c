//! Pure model of a CXL fabric. No KVM, no guest memory.
