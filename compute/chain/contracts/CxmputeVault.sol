// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.20;

/// Holds users' deposits and providers' stakes for the Cxmpute network.
/// The platform ledger credits accounts from these events (verified from receipts);
/// payouts leave the vault only through the operator, after the ledger has debited them.
contract CxmputeVault {
    address public operator;

    event Deposited(address indexed account, uint256 amount);
    event Staked(address indexed provider, uint256 amount);
    event Paid(address indexed to, uint256 amount, bytes32 indexed ref);

    error NotOperator();
    error ZeroAmount();
    error TransferFailed();

    constructor() {
        operator = msg.sender;
    }

    function deposit() external payable {
        if (msg.value == 0) revert ZeroAmount();
        emit Deposited(msg.sender, msg.value);
    }

    function stake() external payable {
        if (msg.value == 0) revert ZeroAmount();
        emit Staked(msg.sender, msg.value);
    }

    /// `ref` is the ledger transaction's idempotency key hash, so a payout is traceable to one debit.
    function pay(address payable to, uint256 amount, bytes32 ref) external {
        if (msg.sender != operator) revert NotOperator();
        if (amount == 0) revert ZeroAmount();
        (bool ok, ) = to.call{value: amount}("");
        if (!ok) revert TransferFailed();
        emit Paid(to, amount, ref);
    }
}
