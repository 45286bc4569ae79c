//! Emulating the dynamic loader's library search on this machine. (To be written.)
