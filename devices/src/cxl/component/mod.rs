//! Component registers (CXL 3.1 §8.2.4): capability array, RAS, link, HDM decoders; DOE/CDAT.
