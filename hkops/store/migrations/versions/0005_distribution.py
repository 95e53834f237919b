"""distribution: catalogue, procurement, stock, agents, orders, payments

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 21:11:38.658695
"""

from alembic import op
import sqlalchemy as sa
import hkops.store.schema


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('agents',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('parent_id', sa.BigInteger(), nullable=True),
    sa.Column('level', sa.Integer(), nullable=False),
    sa.Column('price_level', sa.Integer(), nullable=False),
    sa.Column('location', sa.String(length=32), nullable=False),
    sa.Column('province', sa.String(length=32), nullable=True),
    sa.Column('contact_name', sa.String(length=64), nullable=True),
    sa.Column('contact_phone', sa.String(length=16), nullable=True),
    sa.Column('active', sa.Boolean(), server_default='1', nullable=False),
    sa.Column('created_at', hkops.store.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('changed_at', hkops.store.schema.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_agents')),
    sa.UniqueConstraint('code', name=op.f('uq_agents_code'))
    )
    with op.batch_alter_table('agents', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_agents_parent_id'), ['parent_id'], unique=False)

    op.create_table('orders',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('number', sa.String(length=24), nullable=False),
    sa.Column('channel', sa.String(length=32), nullable=False),
    sa.Column('client_order_id', sa.String(length=64), nullable=True),
    sa.Column('agent_id', sa.BigInteger(), nullable=True),
    sa.Column('agent_chain', sa.Text(), nullable=True),
    sa.Column('plan', sa.String(length=32), nullable=False),
    sa.Column('product', sa.String(length=32), nullable=False),
    sa.Column('carrier', sa.String(length=32), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('msisdn', sa.BigInteger(), nullable=True),
    sa.Column('iccid', sa.String(length=20), nullable=True),
    sa.Column('location', sa.String(length=32), nullable=False),
    sa.Column('subscriber_id', sa.BigInteger(), nullable=True),
    sa.Column('customer_name', sa.String(length=64), nullable=False),
    sa.Column('id_masked', sa.String(length=18), nullable=False),
    sa.Column('resident_id_hash', sa.String(length=64), nullable=False),
    sa.Column('resident_id_enc', sa.Text(), nullable=False),
    sa.Column('contact', sa.String(length=16), nullable=False),
    sa.Column('ship_province', sa.String(length=32), nullable=False),
    sa.Column('ship_address', sa.Text(), nullable=False),
    sa.Column('price_fen', sa.BigInteger(), nullable=False),
    sa.Column('vanity_fee_fen', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('prepay_fen', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('total_fen', sa.BigInteger(), nullable=False),
    sa.Column('min_monthly_fen', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('first_topup_fen', sa.BigInteger(), nullable=True),
    sa.Column('created_at', hkops.store.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.Column('changed_at', hkops.store.schema.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_orders')),
    sa.UniqueConstraint('channel', 'client_order_id', name=op.f('uq_orders_channel_client_order_id')),
    sa.UniqueConstraint('number', name=op.f('uq_orders_number'))
    )
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_orders_agent_id'), ['agent_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_orders_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_orders_iccid'), ['iccid'], unique=False)
        batch_op.create_index(batch_op.f('ix_orders_msisdn'), ['msisdn'], unique=False)
        batch_op.create_index(batch_op.f('ix_orders_resident_id_hash'), ['resident_id_hash'], unique=False)
        batch_op.create_index(batch_op.f('ix_orders_state_id'), ['state', 'id'], unique=False)

    op.create_table('payments',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('order_id', sa.BigInteger(), nullable=False),
    sa.Column('kind', sa.String(length=12), nullable=False),
    sa.Column('amount_fen', sa.BigInteger(), nullable=False),
    sa.Column('method', sa.String(length=16), nullable=False),
    sa.Column('reference', sa.String(length=64), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('at', hkops.store.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payments')),
    sa.UniqueConstraint('method', 'reference', name=op.f('uq_payments_method_reference'))
    )
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_payments_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_payments_order_id'), ['order_id'], unique=False)

    op.create_table('plan_prices',
    sa.Column('plan', sa.String(length=32), nullable=False),
    sa.Column('level', sa.Integer(), nullable=False),
    sa.Column('price_fen', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('plan', 'level', name=op.f('pk_plan_prices'))
    )
    op.create_table('plans',
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('carrier', sa.String(length=32), nullable=False),
    sa.Column('monthly_fee_fen', sa.BigInteger(), nullable=False),
    sa.Column('data_mb', sa.Integer(), nullable=False),
    sa.Column('voice_minutes', sa.Integer(), nullable=False),
    sa.Column('sms', sa.Integer(), nullable=False),
    sa.Column('contract_months', sa.Integer(), server_default='0', nullable=False),
    sa.Column('first_topup_fen', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('min_age', sa.Integer(), nullable=False),
    sa.Column('max_age', sa.Integer(), nullable=False),
    sa.Column('excluded_provinces', sa.Text(), server_default='[]', nullable=False),
    sa.Column('active', sa.Boolean(), server_default='1', nullable=False),
    sa.Column('created_at', hkops.store.schema.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('code', name=op.f('pk_plans'))
    )
    op.create_table('sim_products',
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('carrier', sa.String(length=32), nullable=False),
    sa.Column('form_factor', sa.String(length=12), nullable=False),
    sa.Column('active', sa.Boolean(), server_default='1', nullable=False),
    sa.Column('created_at', hkops.store.schema.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('code', name=op.f('pk_sim_products'))
    )
    op.create_table('stock_locations',
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=12), nullable=False),
    sa.Column('province', sa.String(length=32), nullable=True),
    sa.Column('agent_id', sa.BigInteger(), nullable=True),
    sa.Column('created_at', hkops.store.schema.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('code', name=op.f('pk_stock_locations'))
    )
    op.create_table('stock_minimums',
    sa.Column('location', sa.String(length=32), nullable=False),
    sa.Column('product', sa.String(length=32), nullable=False),
    sa.Column('minimum', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('location', 'product', name=op.f('pk_stock_minimums'))
    )
    op.create_table('stock_moves',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('iccid', sa.String(length=20), nullable=False),
    sa.Column('from_location', sa.String(length=32), nullable=False),
    sa.Column('to_location', sa.String(length=32), nullable=False),
    sa.Column('kind', sa.String(length=12), nullable=False),
    sa.Column('document', sa.String(length=40), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('at', hkops.store.schema.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stock_moves'))
    )
    with op.batch_alter_table('stock_moves', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_stock_moves_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_stock_moves_document'), ['document'], unique=False)
        batch_op.create_index(batch_op.f('ix_stock_moves_iccid_id'), ['iccid', 'id'], unique=False)

    op.create_table('vendors',
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('contact', sa.String(length=64), nullable=True),
    sa.Column('created_at', hkops.store.schema.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('code', name=op.f('pk_vendors'))
    )
    op.create_table('purchase_orders',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('number', sa.String(length=20), nullable=False),
    sa.Column('vendor', sa.String(length=32), nullable=False),
    sa.Column('warehouse', sa.String(length=32), nullable=False),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('extra_cost_fen', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('created_at', hkops.store.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.Column('changed_at', hkops.store.schema.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['vendor'], ['vendors.code'], name=op.f('fk_purchase_orders_vendor_vendors')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_purchase_orders')),
    sa.UniqueConstraint('number', name=op.f('uq_purchase_orders_number'))
    )
    with op.batch_alter_table('purchase_orders', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_purchase_orders_state'), ['state'], unique=False)

    op.create_table('shipments',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('order_id', sa.BigInteger(), nullable=False),
    sa.Column('courier', sa.String(length=32), nullable=False),
    sa.Column('tracking_no', sa.String(length=40), nullable=False),
    sa.Column('state', sa.String(length=12), nullable=False),
    sa.Column('created_at', hkops.store.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('changed_at', hkops.store.schema.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_shipments_order_id_orders')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_shipments')),
    sa.UniqueConstraint('courier', 'tracking_no', name=op.f('uq_shipments_courier_tracking_no'))
    )
    with op.batch_alter_table('shipments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_shipments_order_id'), ['order_id'], unique=False)

    op.create_table('stock_counts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('number', sa.String(length=20), nullable=False),
    sa.Column('location', sa.String(length=32), nullable=False),
    sa.Column('expected', sa.Integer(), nullable=False),
    sa.Column('counted', sa.Integer(), nullable=False),
    sa.Column('missing', sa.Integer(), nullable=False),
    sa.Column('unexpected', sa.Integer(), nullable=False),
    sa.Column('variances', sa.Text(), nullable=True),
    sa.Column('at', hkops.store.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['location'], ['stock_locations.code'], name=op.f('fk_stock_counts_location_stock_locations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stock_counts')),
    sa.UniqueConstraint('number', name=op.f('uq_stock_counts_number'))
    )
    op.create_table('purchase_order_lines',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('po_id', sa.BigInteger(), nullable=False),
    sa.Column('product', sa.String(length=32), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('unit_cost_fen', sa.BigInteger(), nullable=False),
    sa.Column('received', sa.Integer(), server_default='0', nullable=False),
    sa.ForeignKeyConstraint(['po_id'], ['purchase_orders.id'], name=op.f('fk_purchase_order_lines_po_id_purchase_orders')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_purchase_order_lines'))
    )
    with op.batch_alter_table('purchase_order_lines', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_purchase_order_lines_po_id'), ['po_id'], unique=False)

    op.create_table('po_receipts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('po_id', sa.BigInteger(), nullable=False),
    sa.Column('line_id', sa.BigInteger(), nullable=False),
    sa.Column('batch_id', sa.BigInteger(), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('over_quantity', sa.Integer(), server_default='0', nullable=False),
    sa.Column('landed_unit_cost_fen', sa.BigInteger(), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('at', hkops.store.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['batch_id'], ['sim_batches.id'], name=op.f('fk_po_receipts_batch_id_sim_batches')),
    sa.ForeignKeyConstraint(['line_id'], ['purchase_order_lines.id'], name=op.f('fk_po_receipts_line_id_purchase_order_lines')),
    sa.ForeignKeyConstraint(['po_id'], ['purchase_orders.id'], name=op.f('fk_po_receipts_po_id_purchase_orders')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_po_receipts'))
    )
    with op.batch_alter_table('po_receipts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_po_receipts_po_id'), ['po_id'], unique=False)

    with op.batch_alter_table('sim_batches', schema=None) as batch_op:
        batch_op.add_column(sa.Column('product', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('purchase_order', sa.String(length=20), nullable=True))

    # Picking a card for an order: in-stock cards at a location, lowest ICCID first.
    with op.batch_alter_table('sims', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sims_location_state_iccid'), ['location', 'state', 'iccid'], unique=False)

    # Purchase order states (partially_received) are longer than 16 characters.
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.alter_column('from_state', existing_type=sa.String(length=16), type_=sa.String(length=20))
        batch_op.alter_column('to_state', existing_type=sa.String(length=16), type_=sa.String(length=20))


def downgrade() -> None:
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.alter_column('to_state', existing_type=sa.String(length=20), type_=sa.String(length=16))
        batch_op.alter_column('from_state', existing_type=sa.String(length=20), type_=sa.String(length=16))

    with op.batch_alter_table('sims', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sims_location_state_iccid'))

    with op.batch_alter_table('sim_batches', schema=None) as batch_op:
        batch_op.drop_column('purchase_order')
        batch_op.drop_column('product')

    with op.batch_alter_table('po_receipts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_po_receipts_po_id'))

    op.drop_table('po_receipts')
    with op.batch_alter_table('purchase_order_lines', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_purchase_order_lines_po_id'))

    op.drop_table('purchase_order_lines')
    op.drop_table('stock_counts')
    with op.batch_alter_table('shipments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_shipments_order_id'))

    op.drop_table('shipments')
    with op.batch_alter_table('purchase_orders', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_purchase_orders_state'))

    op.drop_table('purchase_orders')
    op.drop_table('vendors')
    with op.batch_alter_table('stock_moves', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_stock_moves_iccid_id'))
        batch_op.drop_index(batch_op.f('ix_stock_moves_document'))
        batch_op.drop_index(batch_op.f('ix_stock_moves_at'))

    op.drop_table('stock_moves')
    op.drop_table('stock_minimums')
    op.drop_table('stock_locations')
    op.drop_table('sim_products')
    op.drop_table('plans')
    op.drop_table('plan_prices')
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_payments_order_id'))
        batch_op.drop_index(batch_op.f('ix_payments_at'))

    op.drop_table('payments')
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_orders_state_id'))
        batch_op.drop_index(batch_op.f('ix_orders_resident_id_hash'))
        batch_op.drop_index(batch_op.f('ix_orders_msisdn'))
        batch_op.drop_index(batch_op.f('ix_orders_iccid'))
        batch_op.drop_index(batch_op.f('ix_orders_created_at'))
        batch_op.drop_index(batch_op.f('ix_orders_agent_id'))

    op.drop_table('orders')
    with op.batch_alter_table('agents', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_agents_parent_id'))

    op.drop_table('agents')
