//! EndTxn (v0-4): commits or aborts the producer's transaction: the decision is written to
//! `__transaction_state`, markers to every partition of the transaction, then the completion
//! (see [`crate::txn::coordinator`]). Needs WRITE on the transactional id
//! (TRANSACTIONAL_ID_AUTHORIZATION_FAILED), as in Kafka.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse};

use sluice_security::acl::AclOperation;

use super::Ctx;

pub(super) async fn handle(ctx: &Ctx<'_>, req: EndTxnRequest) -> EndTxnResponse {
    let result = match ctx.broker.txns() {
        _ if !ctx.authorize_transactional_id(AclOperation::Write, &req.transactional_id.0) => {
            Err(ResponseError::TransactionalIdAuthorizationFailed)
        }
        None => Err(ResponseError::CoordinatorNotAvailable),
        Some(txns) => {
            txns.end_txn(
                &req.transactional_id.0,
                (req.producer_id.0, req.producer_epoch),
                req.committed,
                ctx.version >= 2,
            )
            .await
        }
    };
    let code = result.err().map_or(0, |e| e.code());
    ctx.broker.metrics.error(ctx.api, code);
    EndTxnResponse::default().with_error_code(code)
}
