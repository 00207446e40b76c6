//! `request.head` (`wit/request.wit`): a request's method, path and header
//! entries in one call. wasi:http answers the same in five crossings
//! between guest and host (`method`, `path-with-query`, `headers`,
//! `entries`, the fields' drop); here wasmtime-wasi-http's own functions
//! answer inside the host, so both ways give the same values.

use crate::runtime::bindings::scalelab::guests::request::RequestHead;
use wasmtime::component::Resource;
use wasmtime_wasi_http::WasiHttpCtxView;
use wasmtime_wasi_http::p2::bindings::http::types::{HostFields, HostIncomingRequest as _, Method};
use wasmtime_wasi_http::p2::types::HostIncomingRequest;

/// The head of the request whose resource is `rep` in `http`'s table.
pub fn head(http: &mut WasiHttpCtxView<'_>, rep: u32) -> wasmtime::Result<RequestHead> {
    let borrow = || Resource::<HostIncomingRequest>::new_borrow(rep);
    let method = method_name(http.method(borrow())?);
    let path_with_query = http.path_with_query(borrow())?.unwrap_or_else(|| "/".to_string());
    let fields = http.headers(borrow())?;
    let headers = http.entries(Resource::new_borrow(fields.rep()));
    // Dropped whatever `entries` said: the fields resource is this call's own.
    HostFields::drop(http, fields)?;
    Ok(RequestHead { method, path_with_query, headers: headers? })
}

/// A method as sent: upper case for the standard ones.
pub fn method_name(method: Method) -> String {
    match method {
        Method::Get => "GET".into(),
        Method::Head => "HEAD".into(),
        Method::Post => "POST".into(),
        Method::Put => "PUT".into(),
        Method::Delete => "DELETE".into(),
        Method::Connect => "CONNECT".into(),
        Method::Options => "OPTIONS".into(),
        Method::Trace => "TRACE".into(),
        Method::Patch => "PATCH".into(),
        Method::Other(other) => other,
    }
}
