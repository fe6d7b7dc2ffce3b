//! Mapping PC/SC errors to [`TransportError`].
//!
//! The same PC/SC code means different things depending on when it comes:
//! `NoSmartcard` when connecting means "the reader is empty", but on an open
//! connection it means "the card we were talking to is gone".

use crate::transport::TransportError;

/// Errors that mean the connection to pcscd itself is gone (the daemon is
/// not running, stopped, or restarted so our handles are stale). A cached
/// context that fails with one of these is thrown away and re-established.
pub(crate) fn is_service_lost(e: pcsc::Error) -> bool {
    matches!(
        e,
        pcsc::Error::NoService
            | pcsc::Error::ServiceStopped
            | pcsc::Error::InvalidHandle
            | pcsc::Error::CommError
            | pcsc::Error::Shutdown
    )
}

/// Errors of calls that need only a context (list readers, establish).
pub(crate) fn map_service_error(e: pcsc::Error) -> TransportError {
    if is_service_lost(e) {
        TransportError::NoService
    } else {
        TransportError::Other(e.to_string())
    }
}

/// Errors of `SCardConnect` to `reader`.
pub(crate) fn map_connect_error(e: pcsc::Error, reader: &str) -> TransportError {
    use pcsc::Error as E;
    match e {
        E::UnknownReader | E::ReaderUnavailable | E::NoReadersAvailable => {
            TransportError::ReaderNotFound(reader.to_owned())
        }
        E::NoSmartcard | E::RemovedCard => TransportError::NoCard,
        E::SharingViolation => TransportError::Busy,
        E::NoService | E::ServiceStopped | E::InvalidHandle | E::CommError | E::Shutdown => {
            TransportError::NoService
        }
        other => TransportError::Other(other.to_string()),
    }
}

/// Errors on an open connection (transmit, control, reconnect, status).
pub(crate) fn map_card_error(e: pcsc::Error) -> TransportError {
    use pcsc::Error as E;
    match e {
        // Another application reset the card (or it lost power): the command
        // was not sent; the caller reconnects and selects its application
        // again. Every verified state is gone.
        E::ResetCard | E::UnpoweredCard => TransportError::CardReset,
        // On an open connection all of these mean the card we talked to is
        // no longer reachable: `RemovedCard`/`NoSmartcard` are the direct
        // answers; pcscd answers `NotTransacted` when the card (here: the
        // vpcd card process) vanishes in the middle of an exchange;
        // `ReaderUnavailable`/`UnknownReader` when the whole reader went away
        // with it; `InvalidHandle` when pcscd restarted and forgot our
        // handle. In every case the worker must drop this connection and
        // open a new one once a card is inserted again.
        E::RemovedCard
        | E::NoSmartcard
        | E::NotTransacted
        | E::ReaderUnavailable
        | E::UnknownReader
        | E::InvalidHandle => TransportError::CardRemoved,
        E::NoService | E::ServiceStopped | E::CommError | E::Shutdown => TransportError::NoService,
        E::SharingViolation => TransportError::Busy,
        E::UnsupportedFeature => TransportError::Unsupported,
        other => TransportError::Other(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pcsc::Error as E;

    #[test]
    fn connect_errors() {
        let r = "Virtual PCD 00 01";
        assert_eq!(
            map_connect_error(E::UnknownReader, r),
            TransportError::ReaderNotFound(r.into())
        );
        assert_eq!(
            map_connect_error(E::ReaderUnavailable, r),
            TransportError::ReaderNotFound(r.into())
        );
        assert_eq!(map_connect_error(E::NoSmartcard, r), TransportError::NoCard);
        assert_eq!(map_connect_error(E::RemovedCard, r), TransportError::NoCard);
        assert_eq!(
            map_connect_error(E::SharingViolation, r),
            TransportError::Busy
        );
        assert_eq!(
            map_connect_error(E::NoService, r),
            TransportError::NoService
        );
        assert_eq!(
            map_connect_error(E::ServiceStopped, r),
            TransportError::NoService
        );
        assert!(matches!(
            map_connect_error(E::ProtoMismatch, r),
            TransportError::Other(_)
        ));
    }

    #[test]
    fn card_errors() {
        assert_eq!(map_card_error(E::ResetCard), TransportError::CardReset);
        assert_eq!(map_card_error(E::UnpoweredCard), TransportError::CardReset);
        for e in [
            E::RemovedCard,
            E::NoSmartcard,
            E::NotTransacted,
            E::ReaderUnavailable,
            E::UnknownReader,
            E::InvalidHandle,
        ] {
            assert_eq!(map_card_error(e), TransportError::CardRemoved, "{e:?}");
        }
        assert_eq!(map_card_error(E::NoService), TransportError::NoService);
        assert_eq!(map_card_error(E::ServiceStopped), TransportError::NoService);
        assert_eq!(
            map_card_error(E::UnsupportedFeature),
            TransportError::Unsupported
        );
        assert_eq!(map_card_error(E::SharingViolation), TransportError::Busy);
        assert!(matches!(
            map_card_error(E::InsufficientBuffer),
            TransportError::Other(_)
        ));
    }

    #[test]
    fn service_errors() {
        assert_eq!(map_service_error(E::NoService), TransportError::NoService);
        assert_eq!(
            map_service_error(E::InvalidHandle),
            TransportError::NoService
        );
        assert!(!is_service_lost(E::NoReadersAvailable));
        assert!(!is_service_lost(E::Cancelled));
    }
}
