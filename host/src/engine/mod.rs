//! The reconcile loop: observe -> decide -> enforce -> act.
