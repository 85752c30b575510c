//! Device registers (CXL 3.1 §8.2.8) and the mailbox with its commands.
