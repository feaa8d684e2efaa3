//! Feeding tonic's balanced channel from a discovery. TODO(helper)
