//! The instances the rows write: addresses, native values, batches of puts.

use etcd_client::{Client, PutOptions, Txn, TxnOp};
use tonic_etcd::codec::{Codec, Native};
use tonic_etcd::Instance;

pub(crate) fn native_value(service: &str, addr: &str) -> Vec<u8> {
    Native
        .encode(&Instance::new(service, addr).unwrap())
        .unwrap()
}

pub(crate) fn addr_of(i: usize) -> String {
    format!(
        "10.{}.{}.{}:50051",
        (i >> 16) & 0xff,
        (i >> 8) & 0xff,
        i & 0xff
    )
}

pub(crate) async fn write_many(client: &Client, service: &str, n: usize) {
    let mut kv = client.clone();
    let mut batch = Vec::with_capacity(128);
    for i in 0..n {
        let addr = addr_of(i);
        batch.push(TxnOp::put(
            format!("/services/{service}/{addr}"),
            native_value(service, &addr),
            None::<PutOptions>,
        ));
        if batch.len() == 128 || i + 1 == n {
            kv.txn(Txn::new().and_then(std::mem::take(&mut batch)))
                .await
                .unwrap();
        }
    }
}
