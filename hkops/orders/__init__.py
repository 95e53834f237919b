"""Sales orders (订单) and their shipments, from intake to first top-up."""
