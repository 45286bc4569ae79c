//! Reading and rewriting the dynamic section of ELF files: DT_NEEDED,
//! DT_RPATH/DT_RUNPATH, DT_SONAME, symbol version needs. (To be written.)
