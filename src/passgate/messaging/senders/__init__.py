"""Message senders behind two small protocols: email and SMS."""
