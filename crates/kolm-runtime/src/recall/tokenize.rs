//! FTS5's own tokenizer, called directly to split a query into terms.
//!
//! The index's terms are what FTS5's `porter unicode61 remove_diacritics 2` tokenizer made of
//! the chunks, so a query must be split by that very tokenizer. SQLite exposes it to C through
//! the `fts5_api` of a connection; asking it directly costs microseconds, where running the
//! query through a scratch FTS5 table (an insert, a segment write, a vocabulary scan, a
//! delete) took most of a query's time.

use std::collections::BTreeMap;
use std::ffi::{c_char, c_int, c_void, CString};
use std::ptr::null_mut;

use rusqlite::ffi;
use rusqlite::Connection;

use crate::{Error, Result};

/// The tokenizer and its arguments, as in the index's `chunks_fts` declaration.
const TOKENIZER: &str = "porter";
const ARGS: [&str; 3] = ["unicode61", "remove_diacritics", "2"];

fn fail(what: &str) -> Error {
    Error::failed("the FTS5 tokenizer failed", what.to_string())
}

/// The connection's `fts5_api` (SQLite hands it out through `SELECT fts5(?)` with a pointer
/// bound to the parameter).
fn api(db: &Connection) -> Result<*mut ffi::fts5_api> {
    let mut api: *mut ffi::fts5_api = null_mut();
    // SAFETY: a statement on this connection's handle, finalised before returning; the bound
    // pointer is to a local that outlives the step, tagged with the type name FTS5 expects.
    unsafe {
        let handle = db.handle();
        let mut stmt: *mut ffi::sqlite3_stmt = null_mut();
        let sql = c"SELECT fts5(?1)";
        if ffi::sqlite3_prepare_v2(handle, sql.as_ptr(), -1, &mut stmt, null_mut())
            != ffi::SQLITE_OK
        {
            return Err(fail("this SQLite has no FTS5"));
        }
        ffi::sqlite3_bind_pointer(
            stmt,
            1,
            (&mut api as *mut *mut ffi::fts5_api).cast::<c_void>(),
            c"fts5_api_ptr".as_ptr(),
            None,
        );
        ffi::sqlite3_step(stmt);
        ffi::sqlite3_finalize(stmt);
    }
    if api.is_null() {
        return Err(fail("no fts5_api"));
    }
    Ok(api)
}

/// Collects tokens for [`terms`].
unsafe extern "C" fn on_token(
    ctx: *mut c_void,
    _flags: c_int,
    token: *const c_char,
    n: c_int,
    _start: c_int,
    _end: c_int,
) -> c_int {
    // SAFETY: `ctx` is the map `terms` passed in; `token` points at `n` bytes for this call.
    let out = unsafe { &mut *ctx.cast::<BTreeMap<String, u32>>() };
    let bytes = unsafe { std::slice::from_raw_parts(token.cast::<u8>(), n.max(0) as usize) };
    *out.entry(String::from_utf8_lossy(bytes).into_owned())
        .or_default() += 1;
    ffi::SQLITE_OK
}

/// The distinct terms of `text` as the index's tokenizer makes them, with their counts, in
/// term order.
pub fn terms(db: &Connection, text: &str) -> Result<Vec<(String, u32)>> {
    let api = api(db)?;
    let name = CString::new(TOKENIZER).expect("no NUL");
    let args: Vec<CString> = ARGS
        .iter()
        .map(|a| CString::new(*a).expect("no NUL"))
        .collect();
    let mut argv: Vec<*const c_char> = args.iter().map(|a| a.as_ptr()).collect();
    let mut out: BTreeMap<String, u32> = BTreeMap::new();
    // The text as FTS5 sees it: NUL-free bytes with an explicit length.
    let bytes = text.as_bytes();
    let len = c_int::try_from(bytes.len()).map_err(|_| fail("query too long"))?;
    // SAFETY: the api, tokenizer vtable and instance come from this connection's FTS5 and are
    // used while it is open; the instance is deleted before returning; `argv` and `bytes`
    // outlive the calls that read them.
    unsafe {
        let mut user: *mut c_void = null_mut();
        let mut vt: ffi::fts5_tokenizer = std::mem::zeroed();
        let find = (*api)
            .xFindTokenizer
            .ok_or_else(|| fail("no xFindTokenizer"))?;
        if find(api, name.as_ptr(), &mut user, &mut vt) != ffi::SQLITE_OK {
            return Err(fail("no porter tokenizer"));
        }
        let (Some(create), Some(delete), Some(tokenize)) = (vt.xCreate, vt.xDelete, vt.xTokenize)
        else {
            return Err(fail("an incomplete tokenizer"));
        };
        let mut tok: *mut ffi::Fts5Tokenizer = null_mut();
        if create(user, argv.as_mut_ptr(), argv.len() as c_int, &mut tok) != ffi::SQLITE_OK {
            return Err(fail("cannot create it"));
        }
        let rc = tokenize(
            tok,
            (&mut out as *mut BTreeMap<String, u32>).cast::<c_void>(),
            ffi::FTS5_TOKENIZE_QUERY,
            bytes.as_ptr().cast::<c_char>(),
            len,
            Some(on_token),
        );
        delete(tok);
        if rc != ffi::SQLITE_OK {
            return Err(fail("tokenizing failed"));
        }
    }
    Ok(out.into_iter().collect())
}
